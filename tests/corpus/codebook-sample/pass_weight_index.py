# question: codebook-sample
# expect: pass
# why: index the weight table
z_q = model.codebook.weight[torch.randint(512, (16,))]
