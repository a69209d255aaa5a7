# question: mnist-decoder-bce
# expect: fail
# why: hard-codes latent_dim = 20
decoder = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784), nn.Sigmoid())
