# question: codebook-sample
# expect: pass
# why: a uniform prior over the codes as a Categorical distribution, sampled 16 times
prior = torch.distributions.Categorical(logits=torch.zeros(model.codebook.num_embeddings))
z_q = model.codebook(prior.sample((16,)))
