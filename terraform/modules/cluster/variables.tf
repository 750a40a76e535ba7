variable "name" {
  description = "The cluster's name: a DNS-1123 label, unique in the federation."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.name))
    error_message = "name must be a DNS-1123 label: lower-case letters, digits and '-', 1 to 63 characters, starting and ending with a letter or digit."
  }
}

variable "locality" {
  description = "Where the cluster runs: `region` or `region/zone` (gateways prefer exporters in their own region)."
  type        = string
  default     = null
  validation {
    condition     = var.locality == null || can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(/[a-z0-9]([-a-z0-9]*[a-z0-9])?)?$", var.locality))
    error_message = "locality must be `region` or `region/zone`, each a DNS-1123 label."
  }
}

variable "quic_listen" {
  description = "host:port the cluster's east-west gateway accepts QUIC from peers on."
  type        = string
  validation {
    condition     = can(regex("^[^:]+:[0-9]{1,5}$", var.quic_listen))
    error_message = "quic_listen must be host:port, for example 10.0.0.5:15443."
  }
}

variable "metrics_listen" {
  description = "host:port of the gateway's Prometheus /metrics (null: none)."
  type        = string
  default     = null
}

variable "import_range" {
  description = "The IPv4 CIDR the gateway gives imported services their addresses from."
  type        = string
  default     = "127.77.0.0/16"
  validation {
    condition     = can(cidrhost(var.import_range, 1)) && !strcontains(var.import_range, ":")
    error_message = "import_range must be an IPv4 CIDR such as 127.77.0.0/16."
  }
}

variable "leaf_lifetime" {
  description = "Lifetime of the gateway's certificates, renewed at about half-life (at least 10s)."
  type        = string
  default     = "24h"
}

variable "exports" {
  description = "Services this cluster's gateway serves to the others: namespace, name, whether callers must carry a workload identity (identity: \"optional\" or \"required\"), and ports with their endpoints (host:port of the pods or VMs)."
  type = list(object({
    namespace = string
    name      = string
    identity  = optional(string, "optional")
    ports = list(object({
      port         = number
      endpoints    = list(string)
      app_protocol = optional(string, "tcp")
    }))
  }))
  default = []
  validation {
    condition = alltrue([
      for e in var.exports : can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", e.namespace)) && can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", e.name))
    ])
    error_message = "each export's namespace and name must be DNS-1123 labels."
  }
  validation {
    condition     = alltrue(flatten([for e in var.exports : [for p in e.ports : p.port >= 1 && p.port <= 65535 && length(p.endpoints) > 0]]))
    error_message = "each export port must be 1 to 65535 and have at least one endpoint."
  }
  validation {
    condition     = alltrue(flatten([for e in var.exports : [for p in e.ports : contains(["tcp", "tls"], p.app_protocol)]]))
    error_message = "app_protocol must be \"tcp\" (the default) or \"tls\"."
  }
  validation {
    condition     = alltrue([for e in var.exports : contains(["optional", "required"], e.identity)])
    error_message = "an export's identity must be \"optional\" (the default) or \"required\" (only callers whose workload identity is carried)."
  }
}

variable "revoked" {
  description = "true cuts the cluster off (final: its gateways are refused and its token is void)."
  type        = bool
  default     = false
}
