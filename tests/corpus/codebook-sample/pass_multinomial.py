# question: codebook-sample
# expect: pass
# why: torch.multinomial over uniform probabilities
probs = torch.full((model.codebook.num_embeddings,), 1.0 / model.codebook.num_embeddings)
z_q = model.codebook(torch.multinomial(probs, 16, replacement=True))
