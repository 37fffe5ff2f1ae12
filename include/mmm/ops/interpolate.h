/* Resampling of channels-last grids. Backward conventions: see dense.h. */
#ifndef MMM_OPS_INTERPOLATE_H
#define MMM_OPS_INTERPOLATE_H

/* PyTorch's F.interpolate(x, size=(Ho, Wo), mode="bicubic", align_corners=False) on a
 * channels-last grid (used to fit the vision position embedding to another patch grid):
 * per axis, output o samples input position (o + 0.5)·in/out − 0.5 with the cubic convolution
 * kernel a = −0.75 over its 4 neighbours, indices clamped to the border (no antialiasing, the
 * same weights when downscaling). Equal sizes copy. The horizontal interpolation of 4 rows is
 * followed by the vertical one, in fp32, in PyTorch's order. */
void mmm_bicubic_resize_forward(float *out,       /* (Ho, Wo, C) */
                                const float *inp, /* (Hi, Wi, C) */
                                int Hi, int Wi, int Ho, int Wo, int C);
void mmm_bicubic_resize_backward(float *dinp,       /* (Hi, Wi, C), += */
                                 const float *dout, /* (Ho, Wo, C) */
                                 int Hi, int Wi, int Ho, int Wo, int C);

#endif
