variable "name" {
  description = "Name prefix of the security group, launch template and instances; the Role tag is NAME-worker."
  type        = string
}

variable "tags" {
  description = "Tags of every resource here, propagated to the instances and their volumes."
  type        = map(string)
}

variable "autoscaling_group_name" {
  description = "Name of the Auto Scaling group (chosen by the caller, so the IAM role can name it first)."
  type        = string
}

variable "worker_count" {
  description = "Number of spot workers: the group's desired and maximum capacity."
  type        = number
}

variable "instance_types" {
  description = "NVIDIA GPU instance types the group may launch, one override each."
  type        = list(string)
}

variable "max_price" {
  description = "Spot max price in USD per hour; the worker also reports cost with it."
  type        = number
}

variable "ami_id" {
  description = "AMI id; empty picks the newest musicgen-batch-* AMI owned by this account."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the subnets (the default VPC): the security group's."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets the group launches into, one per availability zone."
  type        = list(string)
}

variable "root_volume_size_gb" {
  description = "Size in GB of the encrypted gp3 root volume; at least the AMI's root snapshot."
  type        = number
}

variable "instance_profile_name" {
  description = "IAM instance profile the workers run with."
  type        = string
}

variable "region" {
  description = "Region the worker talks to S3 in."
  type        = string
}

variable "bucket_name" {
  description = "Bucket the worker writes songs, the cost report and logs to."
  type        = string
}

variable "git_repo_url" {
  description = "HTTPS URL of the repository the worker clones on every boot."
  type        = string
}

variable "git_ref" {
  description = "Branch, tag or commit the worker runs."
  type        = string
}

variable "model_path" {
  description = "Model folder on the AMI, or a Hugging Face model id."
  type        = string
}

variable "batch_size" {
  description = "Songs generated together; 0 lets the worker choose."
  type        = number
}

variable "audio_format" {
  description = "Song file format, wav or flac (the worker's MUSICGEN_FORMAT)."
  type        = string
}

variable "keep_alive" {
  description = "Keep the instance up after its batch; false: it scales itself in."
  type        = bool
}

variable "max_hours" {
  description = "Hours after which a worker checkpoints and scales in (the worker's MUSICGEN_MAX_HOURS)."
  type        = number
}

variable "max_failed_boots" {
  description = "Failed boots that ran nothing (checkout failed, or every GPU unusable), batch-wide, after which an instance sets the group's desired capacity to 0."
  type        = number
}

variable "git_token_parameter" {
  description = "SSM parameter holding the git token of a private repository; empty for a public one."
  type        = string
}
