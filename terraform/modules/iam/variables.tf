variable "name" {
  description = "Name prefix of the role and instance profile (NAME-worker-...)."
  type        = string
}

variable "tags" {
  description = "Tags of the role and instance profile."
  type        = map(string)
}

variable "bucket_arn" {
  description = "ARN of the bucket the workers read and write."
  type        = string
}

variable "autoscaling_group_name" {
  description = "Name of the workers' Auto Scaling group: the only group whose instances the role may terminate (scale-in)."
  type        = string
}

variable "enable_ssm" {
  description = "Attach AmazonSSMManagedInstanceCore (Session Manager) to the role."
  type        = bool
}

variable "git_token_parameter" {
  description = "SSM parameter (name, in the provider's region) the workers may read: the git token of a private repository; empty grants no SSM access."
  type        = string
}
