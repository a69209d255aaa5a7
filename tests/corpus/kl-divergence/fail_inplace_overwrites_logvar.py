# question: kl-divergence
# expect: fail
# why: exp_ overwrites logvar with the variance, so the later `logvar` term uses the wrong tensor
# reason: kl =
var = logvar.exp_()
kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - var)
