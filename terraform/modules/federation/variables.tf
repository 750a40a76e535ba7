variable "trust_domain" {
  description = "The federation's SPIFFE trust domain, for example mesh.example."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", var.trust_domain))
    error_message = "trust_domain must be a DNS name in lower case, for example mesh.example."
  }
}

variable "nodes" {
  description = "The federation's nodes: id (positive, unique, never reused), name (the NODE of spiffe://TD/federation/NODE), and the raft, admin (gRPC) and rest listeners as host:port; metrics optional."
  type = list(object({
    id      = number
    name    = string
    raft    = string
    admin   = string
    rest    = string
    metrics = optional(string)
  }))
  validation {
    condition     = length(var.nodes) >= 1 && length(var.nodes) % 2 == 1
    error_message = "nodes: an odd number of nodes (1, 3, 5): a majority must survive a node's loss."
  }
  validation {
    condition     = length(distinct([for n in var.nodes : n.id])) == length(var.nodes) && alltrue([for n in var.nodes : n.id >= 1 && floor(n.id) == n.id])
    error_message = "nodes: each id must be a positive whole number, unique."
  }
  validation {
    condition     = length(distinct([for n in var.nodes : n.name])) == length(var.nodes) && alltrue([for n in var.nodes : can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", n.name))])
    error_message = "nodes: each name must be a unique DNS-1123 label."
  }
  validation {
    condition     = alltrue(flatten([for n in var.nodes : [for a in [n.raft, n.admin, n.rest] : can(regex("^[^:]+:[0-9]{1,5}$", a))]]))
    error_message = "nodes: raft, admin and rest must be host:port."
  }
}

variable "tls_dir" {
  description = "Where each node finds its certificate files, relative to its config file: NODE is replaced by the node's name (bundle.pem, cert.pem, key.pem inside)."
  type        = string
  default     = "ca/NODE"
}

variable "admin_clients" {
  description = "SPIFFE IDs of platform admins (client certificates)."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.admin_clients : startswith(c, "spiffe://${var.trust_domain}/")])
    error_message = "admin_clients must be SPIFFE IDs of the trust domain (spiffe://TRUST_DOMAIN/...)."
  }
}

variable "root_cert" {
  description = "The root CA certificate file, when the nodes sign enrolling clusters' intermediates (with root_key); null: gateways bring intermediates signed elsewhere."
  type        = string
  default     = null
}

variable "root_key" {
  description = "The root CA key file (keep it readable by the nodes only)."
  type        = string
  default     = null
}
