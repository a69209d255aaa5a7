# question: codebook-sample
# expect: fail
# why: one code repeated 16 times
# reason: uniform
z_q = model.codebook.weight[torch.randint(512, (1,))].expand(16, 64)
