# question: codebook-flatten
# expect: pass
# why: the einops Rearrange layer, as used inside nn.Sequential
import einops.layers.torch as el

to_rows = el.Rearrange("b d h w -> (b h w) d")
flat_z = to_rows(z)
