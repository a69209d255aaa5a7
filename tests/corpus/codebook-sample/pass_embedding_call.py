# question: codebook-sample
# expect: pass
# why: call the embedding on random indices
z_q = model.codebook(torch.randint(0, 512, (16,)))
