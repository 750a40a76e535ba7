# Two clusters: west serves demo/echo, east calls it. The federation (its nodes, their
# certificates) exists already: see terraform/modules/federation for its config files.
provider "isthmus" {
  servers = var.servers
  bundle  = var.bundle
  cert    = var.cert
  key     = var.key
}

module "west" {
  source       = "../../modules/cluster"
  name         = "west"
  locality     = "eu-west"
  quic_listen  = var.west_quic
  import_range = "127.191.0.0/16"
  exports = [{
    namespace = "demo"
    name      = "echo"
    ports     = [{ port = 8080, endpoints = var.echo_endpoints }]
  }]
}

module "east" {
  source       = "../../modules/cluster"
  name         = "east"
  locality     = "eu-east"
  quic_listen  = var.east_quic
  import_range = "127.192.0.0/16"
}

# What west offers, declared centrally too, so that Terraform owns it (and removes it
# before the cluster). West's gateway publishes the exports of its own config with
# their health, naming each port tcp-PORT: the declaration says the same.
resource "isthmus_service_export" "echo" {
  cluster   = module.west.name
  namespace = "demo"
  name      = "echo"
  port {
    name = "tcp-8080"
    port = 8080
  }
}

# One no gateway config carries (its endpoints are announced another way).
resource "isthmus_service_export" "reviews" {
  cluster   = module.west.name
  namespace = "demo"
  name      = "reviews"
  port {
    name     = "http"
    port     = 9080
    protocol = "http"
  }
}

# Cross-cluster traffic is denied unless a policy allows it.
resource "isthmus_policy" "demo" {
  name = "demo"
  rule {
    name   = "east-calls-demo"
    action = "allow"
    from { cluster = module.east.name }
    to {
      namespace = "demo"
      ports     = [8080, 9080]
    }
  }
  rule {
    name   = "no-admin-paths"
    action = "deny"
    mode   = "shadow"
    from {}
    to {
      namespace = "demo"
      http { path_prefixes = ["/admin"] }
    }
  }
  rate_limit {
    name                   = "east-to-echo"
    from_cluster           = module.east.name
    connections_per_second = 100
    to {
      namespace = "demo"
      service   = "echo"
    }
  }
}

resource "isthmus_host_claim" "demo" {
  host      = "echo.demo.example.com"
  namespace = "demo"
}

data "isthmus_trust_bundle" "current" {}
