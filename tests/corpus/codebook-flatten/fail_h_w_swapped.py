# question: codebook-flatten
# expect: fail
# why: orders rows by (b, w, h)
# reason: differs
flat_z = z.permute(0, 3, 2, 1).reshape(-1, z.size(1))
