# Unit tests of the cluster module, with the provider mocked: what it renders, and the
# values its validation refuses.
mock_provider "isthmus" {
  mock_resource "isthmus_cluster" {
    defaults = {
      join_token = "isthmus-join-v1.mock"
      state      = "pending"
    }
  }
}

variables {
  name        = "west"
  locality    = "eu-west"
  quic_listen = "127.0.0.1:15443"
  exports = [{
    namespace = "demo"
    name      = "echo"
    ports     = [{ port = 8080, endpoints = ["127.0.0.1:9000", "127.0.0.1:9001"] }]
  }]
}

run "renders_the_gateway_config" {
  command = apply
  assert {
    condition     = strcontains(output.gateway_config, "cluster = \"west\"")
    error_message = "the config names its cluster"
  }
  assert {
    condition     = strcontains(output.gateway_config, "endpoints = [\"127.0.0.1:9000\", \"127.0.0.1:9001\"]")
    error_message = "the export's endpoints are rendered"
  }
  assert {
    condition     = strcontains(output.gateway_config, "join_token_file = \"join.token\"")
    error_message = "the gateway reads its token from join.token"
  }
  assert {
    condition     = !strcontains(output.gateway_config, "metrics =")
    error_message = "no metrics listener unless asked"
  }
  assert {
    condition     = output.join_token == "isthmus-join-v1.mock"
    error_message = "the token comes from the cluster resource"
  }
}

run "refuses_a_bad_name" {
  command = plan
  variables {
    name = "West_1"
  }
  expect_failures = [var.name]
}

run "refuses_a_bad_import_range" {
  command = plan
  variables {
    import_range = "fd00::/64"
  }
  expect_failures = [var.import_range]
}

run "refuses_an_export_without_endpoints" {
  command = plan
  variables {
    exports = [{ namespace = "demo", name = "echo", ports = [{ port = 8080, endpoints = [] }] }]
  }
  expect_failures = [var.exports]
}

run "refuses_an_unknown_app_protocol" {
  command = plan
  variables {
    exports = [{ namespace = "demo", name = "echo", ports = [{ port = 8443, endpoints = ["10.0.0.1:8443"], app_protocol = "quic" }] }]
  }
  expect_failures = [var.exports]
}
