# question: codebook-flatten
# expect: pass
# why: flatten the spatial dims, then transpose
flat_z = z.flatten(2).transpose(1, 2).reshape(-1, z.shape[1])
