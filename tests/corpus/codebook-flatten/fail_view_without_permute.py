# question: codebook-flatten
# expect: fail
# why: reshapes without moving channels last (seed option)
# reason: differs
flat_z = z.view(-1, z.size(1))
