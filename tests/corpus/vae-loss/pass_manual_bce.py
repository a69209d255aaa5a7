# question: vae-loss
# expect: pass
# why: BCE written out
recon = -(x * torch.log(x_recon) + (1 - x) * torch.log(1 - x_recon)).sum()
kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum()
loss = recon + beta * kl
