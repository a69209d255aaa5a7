# question: codebook-sample
# expect: fail
# why: torch.multinomial draws without replacement by default
# reason: torch.multinomial without replacement=True
weights = torch.ones(model.codebook.num_embeddings)
z_q = model.codebook(torch.multinomial(weights, 16))
