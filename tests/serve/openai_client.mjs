// `mmm serve` through the official openai npm package: answers whole and streamed equal the
// expected text (mmm chat's), 16 clients at once are all answered, and a refusal reaches the
// client as the SDK's BadRequestError with the field at fault. Prints "<what> ok" or
// "FAIL <what>: why" per check.
// usage: node openai_client.mjs NPM_DIR BASE_URL   with the JSON of the cases on standard input:
//   {"model": ..., "prompt": ..., "seed": N, "max_tokens": N, "expected": TEXT,
//    "sampled": {"temperature": T, "top_p": P, "seed": N, "expected": TEXT},
//    "completion": {"prompt": ..., "max_tokens": N, "temperature", "top_p", "seed", "expected": TEXT}}
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const [npmDir, baseURL] = process.argv.slice(2);
const OpenAI = createRequire(npmDir + '/')('openai');
const cases = JSON.parse(readFileSync(0, 'utf8'));
const client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0, timeout: 120000 });
let failed = 0;

function check(ok, what, why) {
    if (ok) console.log(`${what} ok`);
    else { failed++; console.log(`FAIL ${what}: ${why}`); }
}

const request = (extra = {}) => ({
    model: cases.model,
    messages: [{ role: 'user', content: cases.prompt }],
    temperature: 0,
    seed: cases.seed,
    max_tokens: cases.max_tokens,
    ...extra,
});

async function streamed(extra = {}) {
    const stream = await client.chat.completions.create(request({ ...extra, stream: true, stream_options: { include_usage: true } }));
    let text = '', chunks = 0, finish = null, usage = null, role = null;
    for await (const chunk of stream) {
        chunks++;
        if (chunk.object !== 'chat.completion.chunk') throw new Error(`chunk object ${chunk.object}`);
        if (chunk.usage) usage = chunk.usage;
        for (const c of chunk.choices) {
            if (c.delta.role) role = c.delta.role;
            if (c.delta.content) text += c.delta.content;
            if (c.finish_reason) finish = c.finish_reason;
        }
    }
    return { text, chunks, finish, usage, role };
}

async function main() {
    const whole = await client.chat.completions.create(request());
    const c = whole.choices[0];
    check(whole.object === 'chat.completion' && c.message.role === 'assistant', 'openai: a chat completion',
        JSON.stringify(whole).slice(0, 300));
    check(c.message.content === cases.expected, 'openai: the answer equals mmm chat\'s',
        `${JSON.stringify(c.message.content)} vs ${JSON.stringify(cases.expected)}`);
    check(whole.usage.completion_tokens >= 1 && whole.usage.total_tokens === whole.usage.prompt_tokens + whole.usage.completion_tokens,
        'openai: usage counts', JSON.stringify(whole.usage));

    const s = await streamed();
    check(s.text === cases.expected && s.role === 'assistant' && s.finish === c.finish_reason,
        'openai: a stream concatenates to the same answer', `${JSON.stringify(s.text)} (${s.chunks} chunks, ${s.finish})`);
    check(s.usage && s.usage.prompt_tokens === whole.usage.prompt_tokens && s.usage.completion_tokens === whole.usage.completion_tokens,
        'openai: the stream\'s usage chunk', JSON.stringify(s.usage));

    const sp = cases.sampled;
    const sampled = await client.chat.completions.create(request({ temperature: sp.temperature, top_p: sp.top_p, seed: sp.seed }));
    check(sampled.choices[0].message.content === sp.expected, 'openai: a sampled answer (temperature, top_p, seed) equals mmm chat\'s',
        `${JSON.stringify(sampled.choices[0].message.content)} vs ${JSON.stringify(sp.expected)}`);

    // 16 clients at once, half of them streaming: every one gets the whole answer
    const all = await Promise.allSettled(Array.from({ length: 16 }, (_, i) =>
        i % 2 ? streamed().then(r => r.text) : client.chat.completions.create(request()).then(r => r.choices[0].message.content)));
    const good = all.filter(r => r.status === 'fulfilled' && r.value === cases.expected).length;
    const why = all.find(r => r.status === 'rejected' || r.value !== cases.expected);
    check(good === 16, 'openai: 16 concurrent clients all answered', `${good} of 16 right; ${why && (why.reason || JSON.stringify(why.value))}`);

    try {
        await client.chat.completions.create(request({ frequency_penalty: 0.5 }));
        check(false, 'openai: an unknown field is a BadRequestError', 'accepted');
    } catch (e) {
        check(e instanceof OpenAI.BadRequestError && e.status === 400 && e.error && e.error.param === 'frequency_penalty',
            'openai: an unknown field is a BadRequestError', `${e.status} ${JSON.stringify(e.error)}`);
    }
    const cp = cases.completion;
    const sampling = { temperature: cp.temperature, top_p: cp.top_p, seed: cp.seed };
    const completion = await client.completions.create({ model: cases.model, prompt: cp.prompt, max_tokens: cp.max_tokens, ...sampling });
    check(completion.object === 'text_completion' && completion.choices[0].text === cp.expected, 'openai: a text completion',
        `${JSON.stringify(completion.choices[0].text)} vs ${JSON.stringify(cp.expected)}`);
    let streamedText = '';
    for await (const chunk of await client.completions.create({ model: cases.model, prompt: cp.prompt, max_tokens: cp.max_tokens, ...sampling, stream: true }))
        streamedText += chunk.choices.map(c => c.text).join('');
    check(streamedText === cp.expected, 'openai: a streamed text completion', JSON.stringify(streamedText));
    const models = await client.models.list();
    check(models.data.length === 1 && models.data[0].id === cases.model, 'openai: models.list', JSON.stringify(models.data));
}

main().catch(e => { failed++; console.log(`FAIL openai: ${e && e.stack ? e.stack.split('\n')[0] : e}`); })
      .finally(() => process.exit(failed ? 1 : 0));
