# question: codebook-sample
# expect: fail
# why: draws 64 codes instead of 16
# reason: shape
z_q = model.codebook(torch.randint(0, 512, (64,)))
