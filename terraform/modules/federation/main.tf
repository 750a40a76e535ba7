# Renders each node's config file and the commands that bootstrap the federation: the
# first node initialises it, the others join it one by one. Certificates come from the
# CA commands (`isthmus ca issue --spiffe-id spiffe://TD/federation/NODE`); this module
# writes no key.
locals {
  configs = {
    for n in var.nodes : n.name => templatefile("${path.module}/templates/node.toml.tftpl", {
      node          = n
      tls_dir       = replace(var.tls_dir, "NODE", n.name)
      admin_clients = var.admin_clients
      root_cert     = var.root_cert
      root_key      = var.root_key
    })
  }
  first = var.nodes[0]
  bootstrap = join("\n", concat(
    ["isthmus federation init --server ${local.first.admin}"],
    [for n in slice(var.nodes, 1, length(var.nodes)) :
    "isthmus federation member add --server ${local.first.admin} --id ${n.id} --name ${n.name} --raft-addr ${n.raft} --admin-addr ${n.admin} --rest-addr ${n.rest}"],
  ))
}
