# question: reparameterization-trick
# expect: pass
# why: in-place ops on the encoder's own output, legal in a real model (old PyTorch VAE examples)
std = logvar.mul_(0.5).exp_()
eps = torch.randn_like(std)
z = eps.mul(std).add_(mu)
