# Unit tests of the federation module: the node configs and bootstrap it renders, and
# the values its validation refuses.
variables {
  trust_domain  = "mesh.example"
  admin_clients = ["spiffe://mesh.example/cluster/ops/ns/admin/sa/alice"]
  nodes = [
    { id = 1, name = "node-1", raft = "10.0.0.1:7001", admin = "10.0.0.1:7002", rest = "10.0.0.1:7003", metrics = "10.0.0.1:9090" },
    { id = 2, name = "node-2", raft = "10.0.0.2:7001", admin = "10.0.0.2:7002", rest = "10.0.0.2:7003" },
    { id = 3, name = "node-3", raft = "10.0.0.3:7001", admin = "10.0.0.3:7002", rest = "10.0.0.3:7003" },
  ]
}

run "renders_every_node_and_the_bootstrap" {
  command = plan
  assert {
    condition     = length(output.configs) == 3
    error_message = "one config per node"
  }
  assert {
    condition     = strcontains(output.configs["node-2"], "node_id = 2") && strcontains(output.configs["node-2"], "cert = \"ca/node-2/cert.pem\"")
    error_message = "each config is its node's"
  }
  assert {
    condition     = strcontains(output.configs["node-1"], "metrics = \"10.0.0.1:9090\"") && !strcontains(output.configs["node-2"], "metrics =")
    error_message = "metrics only where asked"
  }
  assert {
    condition     = startswith(output.bootstrap, "isthmus federation init --server 10.0.0.1:7002") && strcontains(output.bootstrap, "--id 3 --name node-3")
    error_message = "the first node initialises, the others join"
  }
  assert {
    condition     = output.servers == ["10.0.0.1:7002", "10.0.0.2:7002", "10.0.0.3:7002"]
    error_message = "the admin addresses, for the provider"
  }
}

run "refuses_an_even_number_of_nodes" {
  command = plan
  variables {
    nodes = [
      { id = 1, name = "node-1", raft = "10.0.0.1:7001", admin = "10.0.0.1:7002", rest = "10.0.0.1:7003" },
      { id = 2, name = "node-2", raft = "10.0.0.2:7001", admin = "10.0.0.2:7002", rest = "10.0.0.2:7003" },
    ]
  }
  expect_failures = [var.nodes]
}

run "refuses_duplicate_ids" {
  command = plan
  variables {
    nodes = [
      { id = 1, name = "node-1", raft = "10.0.0.1:7001", admin = "10.0.0.1:7002", rest = "10.0.0.1:7003" },
      { id = 1, name = "node-2", raft = "10.0.0.2:7001", admin = "10.0.0.2:7002", rest = "10.0.0.2:7003" },
      { id = 3, name = "node-3", raft = "10.0.0.3:7001", admin = "10.0.0.3:7002", rest = "10.0.0.3:7003" },
    ]
  }
  expect_failures = [var.nodes]
}

run "refuses_a_bad_trust_domain" {
  command = plan
  variables {
    trust_domain = "Mesh Example"
  }
  expect_failures = [var.trust_domain]
}

run "refuses_an_admin_of_another_trust_domain" {
  command = plan
  variables {
    admin_clients = ["spiffe://other.example/cluster/ops/ns/admin/sa/mallory"]
  }
  expect_failures = [var.admin_clients]
}
