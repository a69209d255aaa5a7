# question: codebook-sample
# expect: fail
# why: shuffles the codebook's rows and takes the first 16, i.e. distinct codes
# reason: not drawn with replacement
z_q = model.codebook.weight[torch.randperm(model.codebook.weight.size(0))][:16].detach()
