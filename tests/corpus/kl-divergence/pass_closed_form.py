# question: kl-divergence
# expect: pass
# why: the closed form
kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
