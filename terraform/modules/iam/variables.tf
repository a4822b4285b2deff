variable "bucket_arn" {
  description = "ARN of the bucket the workers read and write."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_arn))
    error_message = "bucket_arn must be the ARN of an S3 bucket (arn:aws:s3:::name), not an object or wildcard."
  }
}

variable "name_prefix" {
  description = "Prefix of the generated role and instance profile names."
  type        = string
  default     = "musicgen-batch-worker-"
}

variable "git_token_parameter" {
  description = "SSM parameter (name, in the provider's region) the workers may read: the git token of a private repository; empty grants no SSM access."
  type        = string
  default     = ""
}
