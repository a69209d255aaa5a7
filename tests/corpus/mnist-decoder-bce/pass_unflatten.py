# question: mnist-decoder-bce
# expect: pass
# why: nn.Unflatten at the end
decoder = nn.Sequential(nn.Linear(latent_dim, 512), nn.LeakyReLU(0.2), nn.Linear(512, 784), nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28)))
