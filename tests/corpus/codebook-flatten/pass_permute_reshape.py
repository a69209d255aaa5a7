# question: codebook-flatten
# expect: pass
# why: permute channels last, then reshape
flat_z = z.permute(0, 2, 3, 1).reshape(-1, z.size(1))
