# question: codebook-sample
# expect: pass
# why: size from num_embeddings, detached
idx = torch.randint(0, model.codebook.num_embeddings, (16,))
z_q = model.codebook.weight[idx].detach()
