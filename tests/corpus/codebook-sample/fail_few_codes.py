# question: codebook-sample
# expect: fail
# why: only draws from the first 16 codes
# reason: uniform
z_q = model.codebook(torch.randint(0, 16, (16,)))
