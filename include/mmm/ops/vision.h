/* Image-side ops. Backward conventions: see dense.h. */
#ifndef MMM_OPS_VISION_H
#define MMM_OPS_VISION_H

/* InternVL pixel shuffle with downsample ratio 1/r: each r×r block of patch vectors becomes one
 * vector of r²·C channels, blocks in row-major order and, inside a vector, the r² patches in
 * row-major order: out[n, i, j, (a·r + b)·C + c] = inp[n, r·i + a, r·j + b, c].
 * (This is what InternVL's view/permute sequence with ps_version v2 and scale 0.5 computes.)
 * Gh and Gw must be multiples of r. */
void mmm_pixel_shuffle_forward(float *out,       /* (Nimg, Gh/r, Gw/r, r·r·C) */
                               const float *inp, /* (Nimg, Gh, Gw, C) */
                               int Nimg, int Gh, int Gw, int C, int r);
void mmm_pixel_shuffle_backward(float *dinp,       /* (Nimg, Gh, Gw, C), += */
                                const float *dout, /* (Nimg, Gh/r, Gw/r, r·r·C) */
                                int Nimg, int Gh, int Gw, int C, int r);

#endif
