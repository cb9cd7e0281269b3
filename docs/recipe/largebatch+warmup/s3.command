largebatch.py --arch resnet20 --epochs 30 --batch-size 128 --amp bf16 --batch-size 1024 --seed 3 
