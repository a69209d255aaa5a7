# question: vae-loss
# expect: pass
# why: F.binary_cross_entropy with reduction='sum'
bce = F.binary_cross_entropy(x_recon, x, reduction='sum')
kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
loss = bce + beta * kld
