# question: codebook-flatten
# expect: pass
# why: contiguous() before view()
B, D, H, W = z.shape
flat_z = z.permute(0, 2, 3, 1).contiguous().view(B * H * W, D)
