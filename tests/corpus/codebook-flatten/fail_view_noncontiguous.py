# question: codebook-flatten
# expect: fail
# why: view() on a non-contiguous tensor raises
# reason: RuntimeError
flat_z = z.permute(0, 2, 3, 1).view(-1, z.size(1))
