# question: kl-divergence
# expect: fail
# why: hostile
# graded as kl-divergence
import socket
socket.create_connection(('1.1.1.1', 80), timeout=2)
kl = torch.tensor(0.0)
