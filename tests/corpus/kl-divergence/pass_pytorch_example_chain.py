# question: kl-divergence
# expect: pass
# why: the 2017 PyTorch VAE example's chain of in-place ops on intermediate results
KLD_element = mu.pow(2).add_(logvar.exp()).mul_(-1).add_(1).add_(logvar)
kl = torch.sum(KLD_element).mul_(-0.5)
