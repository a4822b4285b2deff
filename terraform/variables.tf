variable "region" {
  description = "AWS region for the bucket and the workers."
  type        = string
  default     = "us-east-1"
}

variable "availability_zone" {
  description = "Availability zone for the workers, e.g. us-east-1b; empty lets EC2 choose (the launcher picks the cheapest zone)."
  type        = string
  default     = ""
}

variable "instance_type" {
  description = "GPU instance type of the workers (an NVIDIA family the CUDA build of torch supports)."
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
  description = "Spot max price in USD per hour per worker; also the hourly cost the worker's cost report uses."
  type        = number
  default     = 0.40

  validation {
    condition     = var.max_price > 0
    error_message = "max_price must be greater than 0 (USD per hour)."
  }
}

variable "worker_count" {
  description = "Number of spot workers; they share the prompts through leases in the bucket. 0 removes the workers and keeps the bucket."
  type        = number
  default     = 1

  validation {
    condition     = var.worker_count >= 0 && floor(var.worker_count) == var.worker_count
    error_message = "worker_count must be a whole number >= 0."
  }
}

variable "ami_id" {
  description = "AMI of the workers; empty uses the newest AMI named musicgen-batch-* owned by this account (built by packer/)."
  type        = string
  default     = ""

  validation {
    condition     = var.ami_id == "" || can(regex("^ami-[0-9a-f]+$", var.ami_id))
    error_message = "ami_id must be empty or an AMI id such as ami-0123456789abcdef0."
  }
}

variable "git_repo_url" {
  description = "HTTPS URL of the git repository the workers clone (holds the worker and prompts.txt); the workers only reach the internet over HTTPS."
  type        = string

  validation {
    condition     = can(regex("^https://[^\\s']+$", var.git_repo_url))
    error_message = "git_repo_url must be an https:// URL without spaces or quotes (the security group allows HTTPS only)."
  }
}

variable "git_ref" {
  description = "Branch, tag or commit of git_repo_url the workers run; fetched again on every boot."
  type        = string
  default     = "main"

  validation {
    condition     = can(regex("^[^\\s']+$", var.git_ref))
    error_message = "git_ref must be a non-empty ref without spaces or quotes."
  }
}

variable "bucket_name" {
  description = "Name of the S3 bucket for songs, reports, logs and bookkeeping; empty generates one starting with musicgen-batch-."
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
  description = "Let terraform destroy delete the bucket with the songs still in it. False keeps songs safe: destroy stops at a non-empty bucket until it is emptied (or applied once with true)."
  type        = bool
  default     = false
}

variable "model_path" {
  description = "MusicGen model on the worker: the folder the Packer AMI holds, or a Hugging Face model id."
  type        = string
  default     = "/opt/musicgen/models/musicgen-small"

  validation {
    condition     = can(regex("^[^\\s']+$", var.model_path))
    error_message = "model_path must be a non-empty path or model id without spaces or quotes."
  }
}

variable "batch_size" {
  description = "Songs each worker generates together; 0 lets the worker choose from free GPU memory."
  type        = number
  default     = 0

  validation {
    condition     = var.batch_size >= 0 && floor(var.batch_size) == var.batch_size
    error_message = "batch_size must be a whole number >= 0."
  }
}

variable "audio_format" {
  description = "File format of the songs: wav (16-bit PCM) or flac (the same samples, about half the size)."
  type        = string
  default     = "wav"

  validation {
    condition     = contains(["wav", "flac"], var.audio_format)
    error_message = "audio_format must be wav or flac."
  }
}

variable "shutdown_when_done" {
  description = "Terminate each worker (shutdown -h) once its batch finished with every song made; the bucket and its songs stay."
  type        = bool
  default     = false
}

variable "root_volume_size_gb" {
  description = "Size in GB of each worker's encrypted gp3 root volume; at least the Packer AMI's root volume (100 GB)."
  type        = number
  default     = 100

  validation {
    condition     = var.root_volume_size_gb >= 100 && floor(var.root_volume_size_gb) == var.root_volume_size_gb
    error_message = "root_volume_size_gb must be a whole number >= 100, the size of the Packer AMI's root snapshot."
  }
}

variable "git_token_parameter" {
  description = "Name of an SSM Parameter Store SecureString (in this region, encrypted with the default aws/ssm key) holding a read-only token for a private git_repo_url; empty for a public repository. The workers' role may read this one parameter only."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^[A-Za-z0-9_./-]*$", var.git_token_parameter)) && length(var.git_token_parameter) <= 2048
    error_message = "git_token_parameter must be empty or an SSM parameter name such as /musicgen/git-token (letters, digits, _ . - and /)."
  }
}
