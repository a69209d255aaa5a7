# question: codebook-flatten
# expect: fail
# why: one row per channel
# reason: shape
flat_z = z.permute(1, 0, 2, 3).reshape(z.size(1), -1)
