# question: kl-divergence
# expect: fail
# why: does not sum over the batch
# reason: shape
kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
