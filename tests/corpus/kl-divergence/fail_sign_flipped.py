# question: kl-divergence
# expect: fail
# why: sign flipped
# reason: expected
kl = 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
