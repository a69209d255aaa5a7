# question: codebook-sample
# expect: fail
# why: draws fresh vectors instead of codebook rows (seed option)
# reason: not a row
z_q = torch.randn(16, 64)
