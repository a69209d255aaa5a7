# question: codebook-flatten
# expect: pass
# why: einops.rearrange, the usual spelling in real VQ-VAE code
from einops import rearrange

flat_z = rearrange(z, "b d h w -> (b h w) d")
