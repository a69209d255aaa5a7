# question: kl-divergence
# expect: pass
# why: sum over latent dims, then over the batch
per_sample = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
kl = per_sample.sum()
