variable "name" {
  description = "Name prefix of a generated bucket name."
  type        = string
}

variable "tags" {
  description = "Tags of the bucket."
  type        = map(string)
}

variable "bucket_name" {
  description = "Bucket name; empty generates a unique name starting with NAME-."
  type        = string
}

variable "force_destroy" {
  description = "Delete the bucket on destroy even when it still holds objects (songs are the user's data, so the root default is false)."
  type        = bool
}

variable "worker_role_arn" {
  description = "ARN of the workers' role: the bucket policy keeps it from overwriting a song."
  type        = string
}
