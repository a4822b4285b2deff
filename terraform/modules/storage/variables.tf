variable "bucket_name" {
  description = "Bucket name; empty generates a unique name starting with musicgen-batch-."
  type        = string
  default     = ""

  validation {
    condition = var.bucket_name == "" || alltrue([
      can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name)),
      !strcontains(var.bucket_name, ".."),
      !can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$", var.bucket_name)),
    ])
    error_message = "bucket_name must be empty or a valid S3 bucket name: 3-63 lowercase letters, digits, dots or hyphens, starting and ending with a letter or digit, no '..', not an IP address."
  }
}

variable "force_destroy" {
  description = "Delete the bucket on destroy even when it still holds objects (songs are the user's data, so the root default is false)."
  type        = bool
  default     = false
}
