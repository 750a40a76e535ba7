terraform {
  required_version = ">= 1.9"
  required_providers {
    isthmus = {
      source  = "isthmus/isthmus"
      version = ">= 0.1.0"
    }
  }
}
