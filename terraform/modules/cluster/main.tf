# One member cluster: created in the federation (pending, with a one-time join token)
# and the config file of its east-west gateway, which enrolls with that token.
resource "isthmus_cluster" "this" {
  name     = var.name
  locality = var.locality
  revoked  = var.revoked ? true : null
}

locals {
  gateway_config = templatefile("${path.module}/templates/gateway.toml.tftpl", {
    name           = var.name
    quic_listen    = var.quic_listen
    metrics_listen = var.metrics_listen
    import_range   = var.import_range
    leaf_lifetime  = var.leaf_lifetime
    exports        = var.exports
  })
}
