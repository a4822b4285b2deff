variable "worker_count" {
  description = "Number of spot workers."
  type        = number
  default     = 1

  validation {
    condition     = var.worker_count >= 0 && floor(var.worker_count) == var.worker_count
    error_message = "worker_count must be a whole number >= 0."
  }
}

variable "instance_type" {
  description = "NVIDIA GPU instance type of the workers."
  type        = string
  default     = "g4dn.xlarge"

  validation {
    # Volta (p3) is left out: CUDA 13 and the current torch wheels dropped sm_70. g4ad (AMD) and
    # g5g (Arm) cannot run the x86 CUDA AMI.
    condition     = can(regex("^(g4dn|g5|g6|g6e|gr6|p4d|p4de|p5|p5e|p5en)\\.[0-9a-z]+$", var.instance_type))
    error_message = "instance_type must be an NVIDIA GPU type of family g4dn, g5, g6, g6e, gr6, p4d, p4de, p5, p5e or p5en (e.g. g4dn.xlarge)."
  }
}

variable "max_price" {
  description = "Spot max price in USD per hour; the worker also reports cost with it."
  type        = number
  default     = 0.40

  validation {
    condition     = var.max_price > 0
    error_message = "max_price must be greater than 0 (USD per hour)."
  }
}

variable "ami_id" {
  description = "AMI id; empty picks the newest musicgen-batch-* AMI owned by this account."
  type        = string
  default     = ""
}

variable "availability_zone" {
  description = "Availability zone of the workers; empty lets EC2 choose."
  type        = string
  default     = ""
}

variable "root_volume_size_gb" {
  description = "Size in GB of the encrypted gp3 root volume; at least the AMI's root snapshot."
  type        = number
  default     = 100

  validation {
    condition     = var.root_volume_size_gb >= 8 && floor(var.root_volume_size_gb) == var.root_volume_size_gb
    error_message = "root_volume_size_gb must be a whole number >= 8."
  }
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
  default     = "main"
}

variable "model_path" {
  description = "Model folder on the AMI, or a Hugging Face model id."
  type        = string
  default     = "/opt/musicgen/models/musicgen-small"
}

variable "batch_size" {
  description = "Songs generated together; 0 lets the worker choose."
  type        = number
  default     = 0
}

variable "audio_format" {
  description = "Song file format, wav or flac (the worker's MUSICGEN_FORMAT)."
  type        = string
  default     = "wav"
}

variable "shutdown_when_done" {
  description = "Shut the worker down after a batch in which every song was made."
  type        = bool
  default     = false
}

variable "git_token_parameter" {
  description = "SSM parameter holding the git token of a private repository; empty for a public one."
  type        = string
  default     = ""
}
