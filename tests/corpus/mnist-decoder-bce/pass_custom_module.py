# question: mnist-decoder-bce
# expect: pass
# why: a custom nn.Module returning images
class Decoder(nn.Module):
    def __init__(self, latent_dim):
        super().__init__()
        self.fc1 = nn.Linear(latent_dim, 256)
        self.fc2 = nn.Linear(256, 28 * 28)

    def forward(self, z):
        h = F.relu(self.fc1(z))
        return torch.sigmoid(self.fc2(h)).view(-1, 1, 28, 28)

decoder = Decoder(latent_dim)
