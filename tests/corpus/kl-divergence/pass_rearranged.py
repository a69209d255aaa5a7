# question: kl-divergence
# expect: pass
# why: rearranged terms
kl = 0.5 * (mu ** 2 + torch.exp(logvar) - 1 - logvar).sum()
