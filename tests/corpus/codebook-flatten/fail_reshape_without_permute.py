# question: codebook-flatten
# expect: fail
# why: same mistake with reshape
# reason: differs
flat_z = z.reshape(-1, z.shape[1])
