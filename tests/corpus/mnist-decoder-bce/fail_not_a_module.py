# question: mnist-decoder-bce
# expect: fail
# why: a function without trainable parameters
# reason: nn.Module
W = torch.randn(latent_dim, 784)
decoder = lambda z: torch.sigmoid(z @ W)
