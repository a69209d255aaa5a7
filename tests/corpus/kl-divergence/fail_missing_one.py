# question: kl-divergence
# expect: fail
# why: drops the constant 1
# reason: expected
kl = -0.5 * torch.sum(logvar - mu.pow(2) - logvar.exp())
