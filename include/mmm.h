/* mmm public API: include this one header. */
#ifndef MMM_H
#define MMM_H

#include "mmm/dtype.h"
#include "mmm/error.h"
#include "mmm/optim.h"
#include "mmm/path.h"
#include "mmm/safetensors.h"
#include "mmm/tokenizer.h"
#include "mmm/version.h"
#include "mmm/ops/activation.h"
#include "mmm/ops/attention.h"
#include "mmm/ops/conv1d.h"
#include "mmm/ops/dense.h"
#include "mmm/ops/loss.h"
#include "mmm/ops/norm.h"
#include "mmm/ops/rope.h"
#include "mmm/ops/ssd.h"
#include "mmm/ops/vision.h"

#endif
