# question: kl-divergence
# expect: fail
# why: averages instead of summing
# reason: expected
kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
